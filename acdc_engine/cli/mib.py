"""``acdc mib``: MIB circuit-track files (export a run, evaluate a file, convert MIB data).

    acdc mib export RUN_ID submission/ --task-name ioi --model-name gpt2
    acdc mib export RUN_ID submission/ --model-name gpt2 --circuits   # 9 circuit files
    acdc mib evaluate submission/ioi_gpt2/importances.json --model tiny-ioi --task ioi
    acdc mib evaluate FILE.json --model M --mib-data ioi_test.jsonl
    acdc mib evaluate submission/ioi_gpt2 --model tiny-ioi --task ioi --log-scale
    acdc mib pairs ioi_test.jsonl pairs.jsonl      # MIB rows -> the engine's pairs format
"""

from __future__ import annotations

import json
from pathlib import Path

from .args import add_threads_arg, model_ref, positive, task_ref

ORDER = 25


def _cmd_export(args) -> int:
    from ..api.mib import export_mib

    path = export_mib(args.run, args.out_dir, task=args.task_name, model=args.model_name,
                      d_model=args.d_model, uri=args.tracking_uri, circuits=args.circuits)
    files = sorted(path.iterdir())
    print(f"wrote {files[0]}" if len(files) == 1 else f"wrote {path} ({len(files)} files)")
    return 0


def _cmd_evaluate(args) -> int:
    from ..api.mib import evaluate_mib
    from ..resources import set_threads

    set_threads(args.threads)
    problem = {k: v for k, v in (("metric", args.metric), ("ablation", args.ablation),
                                 ("n_examples", args.examples), ("batch_size", args.batch_size),
                                 ("seed", args.seed), ("device", args.device),
                                 ("dtype", args.dtype)) if v is not None}
    file = getattr(args, "mib_file", None) or args.file
    ev = evaluate_mib(file, args.model, args.task, mib_data=args.mib_data,
                      counterfactual=args.counterfactual, absolute=not args.signed,
                      progress=not args.no_progress,
                      log_scale=getattr(args, "log_scale", False), **problem)
    print(ev.summary())
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(ev.as_dict(), indent=1))
        print(f"wrote {args.json}")
    return 0


def _cmd_pairs(args) -> int:
    from ..evaluation.mib_data import write_mib_pairs

    path = write_mib_pairs(args.mib_data, args.out, args.counterfactual)
    print(f"wrote {path}")
    return 0


def add_evaluate_args(p) -> None:
    """The options of ``acdc mib evaluate`` that are not ``acdc evaluate``'s too."""
    p.add_argument("file", type=Path, help="a MIB circuit file (EAP-IG Graph.to_json) or a "
                   "submission folder TASK_MODEL/ (importances.json or circuit files)")
    p.add_argument("--mib-data", type=Path, metavar="FILE",
                   help="task data as a local MIB data file (JSON/JSONL rows with prompt and "
                        "*_counterfactual), instead of --task")
    p.add_argument("--counterfactual", metavar="COLUMN",
                   help="with --mib-data: the counterfactual column (default: the task kind's, "
                        "e.g. s2_io_flip_counterfactual)")
    p.add_argument("--signed", action="store_true",
                   help="rank edges by signed score, not |score| (MIB's absolute=False)")
    p.add_argument("--json", type=Path, metavar="OUT.json", help="also write the results")


def register(sub) -> None:
    m = sub.add_parser("mib", help="MIB circuit-track files: export a run, evaluate a file",
                       epilog="example: acdc mib export RUN_ID submission/ --model-name gpt2")
    msub = m.add_subparsers(dest="mib_command", required=True)

    ex = msub.add_parser("export", help="a run's scores and circuit as a MIB submission "
                                        "folder (OUT_DIR/TASK_MODEL/importances.json, or "
                                        "9 circuit files with --circuits)",
                         epilog="example: acdc mib export RUN_ID submission/ --task-name ioi "
                                "--model-name gpt2")
    ex.add_argument("run", help="a run id, run directory or edge_scores.tsv")
    ex.add_argument("out_dir", type=Path)
    ex.add_argument("--task-name", help="MIB's task name (default: the run's task)")
    ex.add_argument("--model-name", help="MIB's model name, e.g. gpt2 (default: the run's)")
    ex.add_argument("--d-model", type=positive,
                    help="the model's width for the file's cfg (default: read from the model)")
    ex.add_argument("--tracking-uri", help="MLflow store to look the run up in")
    ex.add_argument("--circuits", action="store_true",
                    help="write MIB's other kind: one circuit per edge fraction (0.1%% ... 50%%"
                         "), circuit_{p}.json, instead of importances.json")
    ex.set_defaults(func=_cmd_export)

    ev = msub.add_parser("evaluate", help="MIB's CPR and CMD (and the engine's curve) of a "
                                          "MIB circuit file",
                         epilog="example: acdc mib evaluate FILE.json --model tiny-ioi --task ioi")
    add_evaluate_args(ev)
    ev.add_argument("--model", type=model_ref, required=True)
    ev.add_argument("--task", type=task_ref, help="task name or pairs file")
    ev.add_argument("--metric")
    ev.add_argument("--ablation", choices=["corrupted", "mean", "zero"])
    ev.add_argument("--examples", type=positive)
    ev.add_argument("--batch-size", type=positive)
    ev.add_argument("--seed", type=int)
    ev.add_argument("--device")
    ev.add_argument("--dtype")
    ev.add_argument("--no-progress", action="store_true")
    ev.add_argument("--log-scale", action="store_true",
                    help="areas over log(fraction), as MIB's leaderboard computes them")
    add_threads_arg(ev)
    ev.set_defaults(func=_cmd_evaluate)

    pa = msub.add_parser("pairs", help="MIB task data (JSON/JSONL) as a pairs file",
                         epilog="example: acdc mib pairs ioi_mib.jsonl ioi_pairs.jsonl")
    pa.add_argument("mib_data", type=Path)
    pa.add_argument("out", type=Path, help="the pairs file to write (.jsonl)")
    pa.add_argument("--counterfactual", metavar="COLUMN")
    pa.set_defaults(func=_cmd_pairs)
