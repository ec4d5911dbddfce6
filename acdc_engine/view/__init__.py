"""``acdc view``: a live browser workbench over a running model, shared with the notebook.

    from acdc_engine.view import Session
    s = Session.open("tiny-ioi", "ioi")      # model, task, problem, intervention stack
    s.ablate("a3.1")                          # the metric over the task's examples, flips
    server = s.serve()                        # the same session in the browser: server.url

    session       :class:`Session`: the verbs (interventions, undo, hooks, the page's JSON)
    state         what a session holds and the one way it changes: ``session.changing(msg)``
    summary       :class:`Summary` of the metric and predictions; steps: how steps read
    circuits      the circuit drawn on the map (from a run, a file, or discovered)
    inspect       heads (QK patterns, OV writes), logit lens, token attribution
    hooks         hooks code adds to the model (the pages follow)
    console       the page's console verbs
    server        the Starlette app (JSON over HTTP, server-sent events), :class:`ViewServer`
    notebook      inline HTML for Jupyter
    static/       the page: index.html, app.js, app.css (no build step, no network)
"""

from ._compat import warm_anyio

warm_anyio()  # before nnsight mounts .save on every object (see _compat)

from .session import Session, Summary  # noqa: E402

__all__ = ["Session", "Summary", "serve"]


def serve(session: Session, host: str = "127.0.0.1", port: int = 0, token: str | None = None,
          open_browser: bool = False):
    """Serve ``session`` in a background thread; the same as ``session.serve(...)``."""
    return session.serve(host, port, token, open_browser)
