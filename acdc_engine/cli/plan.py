"""``acdc plan``: a run's memory and time before it starts, from the model's config alone.

    acdc plan --model gpt2-ioi-bpe --examples 256 --seq-len 16 --method eap
    acdc plan --model meta-llama/Llama-3.1-8B --examples 1000 --seq-len 128 --method eap-ig \\
              --device cuda --dtype bfloat16

Prints the predicted peak memory per device (weights, cached activations, working memory,
logits, masks), the device's memory, the largest batch that fits, the predicted time on the
measured hardware, and whether a device map or more ranks are needed (docs/scale.md).
"""

from __future__ import annotations

ORDER = 12


def _cmd_plan(args) -> int:
    from ..planning import Hardware, plan

    settings = {}
    for item in args.set or []:
        key, _, value = item.partition("=")
        settings[key.strip()] = value.strip()
    p = plan(args.model, examples=args.examples, seq_len=args.seq_len, method=args.method,
             batch_size=args.batch_size, settings=settings,
             hardware=Hardware(args.device, args.dtype, args.memory))
    print(p.render())
    return 0


def register(sub) -> None:
    """Add ``acdc plan``."""
    p = sub.add_parser("plan", help="predicted peak memory, time and largest batch of a run, "
                                    "from the model's config (no weights loaded)",
                       epilog="example: acdc plan --model tiny-ioi --examples 1000 "
                              "--seq-len 32 --method eap")
    p.add_argument("--model", required=True, help="shipped name, local directory or hub id "
                                                   "(its config.json: local or cached)")
    p.add_argument("--examples", type=int, required=True, help="number of examples")
    p.add_argument("--seq-len", type=int, required=True, help="tokens per example")
    p.add_argument("--method", default="eap", help="discovery method (default eap)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--dtype", default="float32", help="float32, bfloat16 or float16")
    p.add_argument("--batch-size", type=int, default=32, help="examples per batch (default 32)")
    p.add_argument("--memory", type=float, default=None,
                   help="one device's memory in GiB (default: the device's, or 80 for CUDA "
                        "when none is here)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="a method setting that changes the cost (ig_steps, steps, per)")
    p.set_defaults(func=_cmd_plan)
