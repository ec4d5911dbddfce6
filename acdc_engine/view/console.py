"""The console verbs of the page (and of ``session.command``): the same calls the buttons make.

    ablate a3.1 [zero|mean|corrupted]     freeze m2          patch a5.* from corrupted
    undo | reset | restore a3.1           heads a1.2 [qk|ov] [EXAMPLE]
    lens [EXAMPLE] [POSITION]             tokens [EXAMPLE] [input_x_grad|integrated_gradients]
    show circuit RUN|circuit.json         edges N            discover [eap|eap-ig]
    prompt EXAMPLE                        save circuit PATH  save experiment [NAME]
    compare a1.2 [EXAMPLE] | compare circuits                help
    intervene 2:17[@9][=VALUE] ...  (features of the model's shipped transcoders)

Every line returns ``{"ok": bool, "message": str, "verb": str, ...}``; a line that fails
returns ``ok: False`` with the reason and leaves the session as it was. The lines come from
the page, so the verbs that open or write files (``show circuit``, ``save circuit``) take only
paths inside the results folder and the runs given on the command line (:mod:`.paths`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import AcdcError

if TYPE_CHECKING:
    from .session import Session

__all__ = ["run_command", "HELP"]

HELP = __doc__.split("\n\n")[1]
"""The console's help text (the verbs it understands), from the module docstring."""


def _int(word: str, what: str) -> int:
    try:
        return int(word)
    except ValueError:
        raise AcdcError(f"expected {what} (a whole number), got {word!r}") from None


def _summary_message(s: Session, text: str) -> str:
    m = s.summary
    flips = f", {len(m.flipped_step)} flipped" if m.flipped_step else ""
    return f"{text}: {s.problem.metric.name} {m.metric:.4g} ({m.delta:+.4g}){flips}"


def _intervene(s: Session, verb: str, args: list[str]) -> dict:
    s.intervene(" ".join([verb, *args]))
    return {"message": _summary_message(s, " ".join([verb, *args]))}


def _undo(s: Session, args: list[str]) -> dict:
    s.undo()
    return {"message": _summary_message(s, "undo")}


def _restore(s: Session, args: list[str]) -> dict:
    if len(args) != 1:
        raise AcdcError("use 'restore NODE' (e.g. 'restore a3.1')")
    s.restore(args[0])
    return {"message": _summary_message(s, f"restore {args[0]}")}


def _reset(s: Session, args: list[str]) -> dict:
    s.reset()
    return {"message": _summary_message(s, "reset")}


def _heads(s: Session, args: list[str]) -> dict:
    if not args:
        raise AcdcError("heads needs a head or layer, e.g. 'heads a1.2 qk' or 'heads a1.* qk'")
    mode = args[1] if len(args) > 1 else "qk"
    example = _int(args[2], "an example") if len(args) > 2 else 0
    if mode == "qk":
        view = s.inspect.qk(args[0], example)
    elif mode == "ov":
        view = s.inspect.ov(args[0], example if len(args) > 2 else None)
    else:
        raise AcdcError(f"unknown head mode {mode!r} (use qk or ov)")
    return {"message": f"{args[0]} {mode}", "view": view}


def _lens(s: Session, args: list[str]) -> dict:
    example = _int(args[0], "an example") if args else 0
    position = _int(args[1], "a position") if len(args) > 1 else -1
    view = s.inspect.lens(example, position)
    return {"message": f"logit lens of example {example} at position {view['position']}",
            "view": view}


def _tokens(s: Session, args: list[str]) -> dict:
    example = _int(args[0], "an example") if args else 0
    method = args[1] if len(args) > 1 else "input_x_grad"
    view = s.inspect.attribution(example, method)
    return {"message": f"token attribution ({method}) of example {example}", "view": view}


def _show(s: Session, args: list[str]) -> dict:
    if len(args) != 2 or args[0] != "circuit":
        raise AcdcError("use 'show circuit RUN' (a run id, run directory, scores file or "
                        "circuit.json)")
    info = s.circuit.load(args[1], confined=True)
    note = f" ({info['note']})" if info.get("note") else ""
    return {"message": f"circuit of {info['source']}: {info['n_edges']} edges, "
                       f"faithfulness {info['faithfulness']['normalized']:.3f}{note}"}


def _edges(s: Session, args: list[str]) -> dict:
    if len(args) != 1:
        raise AcdcError("use 'edges N'")
    info = s.circuit.size(_int(args[0], "a number of edges"))
    return {"message": f"{info['n_edges']} edges, faithfulness "
                       f"{info['faithfulness']['normalized']:.3f}"}


def _discover(s: Session, args: list[str]) -> dict:
    method = args[0] if args else "eap"
    n = _int(args[1], "a number of edges") if len(args) > 1 else None
    info = s.circuit.discover(method, n)
    return {"message": f"{method}: {info['n_edges']} edges, faithfulness "
                       f"{info['faithfulness']['normalized']:.3f} ({info['seconds']:.1f} s)"}


def _prompt(s: Session, args: list[str]) -> dict:
    if len(args) != 1:
        raise AcdcError("use 'prompt EXAMPLE' (a row number of the task)")
    view = s.prompt(_int(args[0], "an example"))
    return {"message": f"example {view['example']}: {view['clean']}", "prompt": view}


def _save(s: Session, args: list[str]) -> dict:
    if args[:1] == ["circuit"] and len(args) == 2:
        path = s.circuit.save(args[1], confined=True)
        return {"message": f"saved the circuit the interventions leave to {path}"}
    if args[:1] == ["experiment"] and len(args) <= 2:
        run_id = s.circuit.save_experiment(args[1] if len(args) > 1 else None)
        return {"message": f"logged MLflow run {run_id}", "run_id": run_id}
    raise AcdcError("use 'save circuit PATH' or 'save experiment [NAME]'")


def _compare(s: Session, args: list[str]) -> dict:
    from .compare import compare_circuits, compare_heads

    if args == ["circuits"]:
        c = compare_circuits(s)
        return {"message": f"{len(c['both'])} edges in both, {len(c['only_a'])} only in "
                           f"{c['models'][0]}, {len(c['only_b'])} only in {c['models'][1]}",
                "compare": c}
    if not args:
        raise AcdcError("use 'compare a1.2 [EXAMPLE]' or 'compare circuits'")
    example = _int(args[1], "an example") if len(args) > 1 else 0
    view = compare_heads(s, args[0], example)
    return {"message": f"{args[0]}: largest change "
                       f"{max(h['max_change'] for h in view['heads']):.3f}", "view": view}


def _features(s: Session, args: list[str]) -> dict:
    """Ablate (or clamp) transcoder features on the task's prompts: the metric before/after."""
    from ..features import shipped_transcoders
    from ..features.interventions import intervene_task, parse_edit

    if not args:
        raise AcdcError("use 'intervene LAYER:FEATURE[@POS,..][=VALUE] ...' (e.g. 2:17@9)")
    out = intervene_task(s.problem, shipped_transcoders(s.model).to(s.model.device),
                         [parse_edit(a) for a in args])
    return {"message": f"{' '.join(args)}: {s.problem.metric.name} {out.metric_before:.4g} -> "
                       f"{out.metric_after:.4g}; top prediction changed in "
                       f"{len(out.changed)} of {len(out.top_before)}",
            "intervention": out.to_dict()}


def _help(s: Session, args: list[str]) -> dict:
    return {"message": HELP}


VERBS = {
    "ablate": lambda s, a: _intervene(s, "ablate", a),
    "freeze": lambda s, a: _intervene(s, "freeze", a),
    "patch": lambda s, a: _intervene(s, "patch", a),
    "undo": _undo, "reset": _reset, "restore": _restore, "heads": _heads, "lens": _lens,
    "tokens": _tokens, "show": _show, "edges": _edges, "discover": _discover,
    "prompt": _prompt, "save": _save, "compare": _compare, "help": _help,
    "intervene": _features,
}


def run_command(session: Session, text: str) -> dict:
    """Run one console line on ``session``."""
    words = text.split()
    if not words:
        return {"ok": False, "verb": "", "message": "type a command ('help' lists them)"}
    verb, args = words[0].lower(), words[1:]
    fn = VERBS.get(verb)
    if fn is None:
        return {"ok": False, "verb": verb,
                "message": f"unknown command {verb!r} (known: {', '.join(VERBS)})"}
    try:
        out = fn(session, args)
    except AcdcError as e:
        return {"ok": False, "verb": verb, "message": str(e)}
    except (KeyError, ValueError) as e:
        return {"ok": False, "verb": verb, "message": str(e.args[0] if e.args else e)}
    return {"ok": True, "verb": verb, **out}
