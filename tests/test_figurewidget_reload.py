"""A page reloaded with the kernel alive rebuilds each widget from its synced state: a FigureWidget's state must
carry its current figure, not the one it was created with (plotly's own FigureWidget keeps the latter)."""

import plotly.graph_objects as go

from labkit.viz._figurewidget import figure_widget


def test_state_carries_the_current_data_and_layout():
    fig = figure_widget(go.Figure(layout={"height": 300}))
    fig.add_trace(go.Heatmap(z=[[None]]))
    with fig.batch_update():
        fig.data[0].update(z=[[1, 2], [3, 4]])
        fig.layout.title = "after the scan"
    state = fig.get_state()
    assert state["_widget_data"][0]["z"] == [[1, 2], [3, 4]]
    assert state["_widget_layout"]["title"] == {"text": "after the scan"} and state["_widget_layout"]["height"] == 300
    assert isinstance(fig, go.FigureWidget)


def test_plain_figurewidget_state_is_stale_which_is_why_this_exists():
    """The control: plotly's FigureWidget state still holds the creation-time figure after the same updates."""
    fig = go.FigureWidget()
    fig.add_trace(go.Heatmap(z=[[None]]))
    with fig.batch_update():
        fig.data[0].update(z=[[1, 2], [3, 4]])
    assert fig.get_state()["_widget_data"] == []


def test_the_explorer_figure_after_a_scan_is_in_its_state():
    from labkit.widgets.explorer import fractal_explorer

    ex = fractal_explorer("quick", resolution=16, steps=20)
    ex.run(background=False)
    z = ex.fig.get_state()["_widget_data"][0]["z"]
    assert len(z) == 16 and any(v is not None for row in z for v in row)


def test_the_landscape_explorer_figure_after_a_run_is_in_its_state():
    import labkit
    from labkit.models import mlp
    from labkit.widgets import landscape_explorer

    ds = labkit.data.gaussian_mixture(n=64, dim=4, classes=3, seed=0)
    ex = landscape_explorer(lambda: mlp(4, [8], 3, activation="tanh", seed=0), ds, steps=20, lr=0.5, every=5,
                            resolution=7)
    ex.run()
    ex.wait(120)
    state = ex.fig.get_state()
    z = state["_widget_data"][0]["z"]
    assert len(z) == 7 and any(v is not None for row in z for v in row)
    assert "PCA plane" in state["_widget_layout"]["title"]["text"]
