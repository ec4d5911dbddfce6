"""Write the tutorial notebooks (``docs/notebooks/*.ipynb``) from the cells below.

    python docs/notebooks/generate.py          # rewrites the .ipynb files, without outputs

The .ipynb files are what is committed, rendered on the documentation site and executed by
``tests/docs/test_notebooks.py``; this script only keeps them easy to review and edit. Edit a
notebook here (or in Jupyter, then strip its outputs: ``nbstripout docs/notebooks/*.ipynb``)
and keep the two in step: ``tests/docs/test_notebooks.py`` fails when they differ.

Each notebook runs offline on the shipped models and checks its own results with ``assert``
cells, so a wrong answer fails the test run as surely as an exception does.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent

KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}


def md(text: str) -> tuple[str, str]:
    return ("markdown", text.strip("\n"))


def code(text: str) -> tuple[str, str]:
    return ("code", text.strip("\n"))


# ----- (a) discover a circuit, read it, look at it, check it ------------------------------------
DISCOVER = [
    md("""
# Discover a circuit, read it, and check how faithful it is

This notebook walks through the job most users come for: take a model and a task of
clean/corrupted prompt pairs, find the **circuit** (the edges between the embeddings, attention
heads, MLPs and the logits that carry the behaviour), read it as a `networkx` graph, draw it, and
put an **interval** on its faithfulness.

It runs offline on `tiny-ioi`, the 4-layer GPT-2 shipped with the package and trained on
*indirect object identification* (IOI): in "When Mary and John went to the store, John gave a
drink to", the model should say " Mary". It takes well under a minute on a laptop CPU.
"""),
    code("""
import networkx as nx
import torch

import acdc_engine
from acdc_engine import Circuit, build_problem, discover, load_model, load_task

torch.manual_seed(0)
print("acdc-engine", acdc_engine.__version__)
"""),
    md("""
## The task and the model

A task is a list of rows: a `clean` prompt, a `corrupted` prompt of the same token length, and
the `answer` (plus, for contrastive metrics, the `wrong_answer`). The IOI task's corrupted
prompts use three other names, so they carry no information about who the answer is.
"""),
    code("""
task = load_task("ioi")
for row in task.rows(2, 0):
    print(f"clean:     {row['clean']!r} -> {row['answer']!r}")
    print(f"corrupted: {row['corrupted']!r}   (wrong answer {row['wrong_answer']!r})")

model = load_model("tiny-ioi", device="cpu")
graph = model.graph
print(f"{model.id}: {graph.n_edges} edges in the computational graph")
"""),
    md("""
## Discover

`discover` scores every edge with a method (here **EAP-IG**: edge attribution patching with
integrated gradients) and keeps the 60 edges with the largest |score|, dropping dead ends.
`track=False` and `render=False` keep this notebook from writing an MLflow run or pictures
into `results/`; on the command line the same run is `acdc discover --edges 60`.

The normalized faithfulness is `(m(C) - m(empty)) / (m(full) - m(empty))` for the task's metric
`m` (here the logit difference between the answer and the wrong answer): 1 means the circuit
alone reproduces the full model's behaviour, 0 means it does no better than ablating every
edge.
"""),
    code("""
result = discover(model, task="ioi", method="eap-ig", n_edges=60, n_examples=32,
                  track=False, render=False, progress=False)
print(result.summary())
"""),
    code("""
faith = result.faithfulness.normalized
circuit = result.circuit
assert 0.0 <= faith <= 1.2, faith               # a share of the behaviour, not noise
assert 0 < circuit.number_of_edges() <= 60
assert result.faithfulness.full > result.faithfulness.empty   # the task moves the metric
"""),
    md("""
## Read it as a networkx graph

`circuit.nx` is a `networkx.MultiDiGraph` of the kept edges. Node names are `input`,
`a{layer}.{head}`, `m{layer}` and `logits`; the edge key is the kind of input it feeds
(`q`, `k`, `v` into a head; `resid` into an MLP or the logits) and every edge carries its `score`.
"""),
    code("""
G = circuit.nx
print(G.number_of_nodes(), "nodes,", G.number_of_edges(), "edges")
strongest = sorted(G.edges(keys=True, data=True), key=lambda e: -abs(e[3]["score"]))[:8]
for u, v, kind, data in strongest:
    print(f"{u:>6} -> {v:<7} <{kind}>  score {data['score']:+.3f}")
"""),
    code("""
# a circuit is a path from the embeddings to the logits, and nothing flows backwards
assert "input" in G and "logits" in G
assert nx.has_path(G, "input", "logits")
assert G.in_degree("input") == 0 and G.out_degree("logits") == 0
assert nx.is_directed_acyclic_graph(G)
heads = sorted(n for n in G if n.startswith("a"))
print("heads in the circuit:", ", ".join(heads))
"""),
    md("""
The networkx form goes both ways: `Circuit.from_networkx(G, graph)` turns an edited graph back
into a circuit, and `circuit.save("circuit.json")` / `Circuit.load(...)` keep it on disk in the
node-link format the CLI writes.
"""),
    code("""
back = Circuit.from_networkx(G, graph)
assert set(back.edge_names) == set(circuit.edge_names)
"""),
    md("""
## Look at it

With the `render` extra (`pip install "acdc-engine[render]"`, matplotlib) the circuit is drawn as
a layered diagram, each edge coloured and sized by its score (docs/pictures.md).
`render_circuit` writes an SVG, a PNG and an offline HTML page.
"""),
    code("""
import importlib.util
import tempfile

from IPython.display import Image, display

if importlib.util.find_spec("matplotlib") is not None:
    from acdc_engine.render import render_circuit

    files = render_circuit(circuit, tempfile.mkdtemp())
    print([f.name for f in files])
    display(Image(filename=str(next(f for f in files if f.suffix == ".png"))))
else:
    print("install the render extra to draw the circuit")
"""),
    md("""
## How sure are we? Faithfulness with a bootstrap interval

One faithfulness number hides how much it depends on the examples. `faithfulness_interval`
resamples the examples with replacement (the full model, the empty circuit and the circuit on
the same draw) and returns a 95% percentile interval. `build_problem` with the same task,
examples and seed rebuilds exactly the problem `discover` used, so the point estimate matches
the one above.

As a baseline, a circuit of the same size made of random edges shows what 60 edges give
without discovery.
"""),
    code("""
from acdc_engine.evidence.uncertainty import faithfulness_interval

problem, data = build_problem(model, task, n_examples=32)
ci = faithfulness_interval(problem, circuit.mask(), n_boot=500)
print(f"discovered circuit: {ci}")

generator = torch.Generator().manual_seed(0)
pick = torch.randperm(graph.n_edges, generator=generator)[:60].tolist()
random_circuit = Circuit.from_edges(graph, [graph.edges[i].name for i in pick])
random_ci = faithfulness_interval(problem, random_circuit.mask(), n_boot=500)
print(f"random circuit ({random_circuit.number_of_edges()} edges after pruning): {random_ci}")
"""),
    code("""
assert ci.low <= ci.point <= ci.high
assert abs(ci.point - faith) < 1e-3, (ci.point, faith)      # the same problem as discover's
assert 0.0 <= ci.low and ci.high <= 1.2
assert random_ci.point < ci.low                  # discovery beats chance by more than the noise
"""),
    md("""
## Where next

- `02-plugin.ipynb`: your own task and metric, registered in-process.
- `03-compare.ipynb`: a base and a fine-tuned model, what changed in the circuit.
- `04-viewer.ipynb`: the live viewer in a notebook, interventions from code.
- The evidence page (docs/evidence.md) has the rest of the uncertainty toolbox: intervals on the
  whole faithfulness curve (`curve_intervals`), stability across subsamples and methods,
  redundancy, and the one-page report (`acdc report RUN_ID`).
"""),
]


# ----- (b) a task and a metric plugin, registered in-process -------------------------------------
PLUGIN = [
    md("""
# Write a task and a metric, register them, discover with them

Everything acdc-engine works with (tasks, metrics, methods, model families, shipped models) comes
from plugins, and the built-ins are plugins like yours. A packaged plugin is found through the
`acdc_engine` entry-point group (docs/plugins.md); in a notebook you register any object with
`@hookimpl` methods **in-process** with `acdc_engine.plugins.register`, and every part of the
engine (`discover`, `load_task`, `acdc plugins`) sees it at once.

This notebook writes:

- a **task**, `ioi-abc`: IOI where the corrupted prompt keeps both names of the clean prompt
  but gives the action to a third name ("... , Kate gave a drink to"), so only the repeated
  subject is taken away;
- a **metric**, `answer_margin`: the answer's logit minus the largest other logit (positive when
  the answer is the top prediction).
"""),
    code("""
import random

import networkx as nx
import torch

from acdc_engine import discover, load_model, load_task, plugins
from acdc_engine.hookspecs import hookimpl
from acdc_engine.metrics import Metric
from acdc_engine.tasks import Task
"""),
    md("""
## The task

A task's `rows(n, seed)` returns up to `n` rows, the same ones for the same seed. When it also
takes a `tokenizer` keyword, the engine passes the model's tokenizer, so the generator can keep
only names that are one token for it (an answer must be one token). Clean and corrupted prompts
must have the same number of tokens: they are aligned position by position.
"""),
    code("""
NAMES = ["Mary", "John", "Alice", "Bob", "Sarah", "Tom", "Kate", "Paul", "Emma", "Mark"]
PLACES = ["store", "park", "school", "garden", "station"]
OBJECTS = ["ball", "book", "drink", "gift", "letter"]
TEMPLATE = "When {a} and {b} went to the {place} , {s} gave a {obj} to"


def abc_rows(n, seed, tokenizer=None):
    names = NAMES
    if tokenizer is not None:      # keep the names that are one token for this model
        names = [w for w in NAMES if len(tokenizer(" " + w)["input_ids"]) == 1]
    rng = random.Random(seed)
    rows = []
    for _ in range(n or 64):
        a, b, c = rng.sample(names, 3)
        place, obj = rng.choice(PLACES), rng.choice(OBJECTS)
        rows.append({
            "clean": TEMPLATE.format(a=a, b=b, s=b, place=place, obj=obj),
            "corrupted": TEMPLATE.format(a=a, b=b, s=c, place=place, obj=obj),
            "answer": f" {a}",
            "wrong_answer": f" {b}",
        })
    return rows


ABC = Task("ioi-abc", abc_rows, model="tiny-ioi", default_n=32, default_metric="answer_margin",
           description="IOI whose corrupted prompt gives the action to a third name")
ABC.rows(2, 0)
"""),
    md("""
## The metric

A metric is a function `fn(logits [B, vocab], batch) -> [B]`: one value per example, from the
logits at the read position (the last prompt token here). `batch.answer` holds the answer
token of each example. `higher_is_better` says which way the behaviour goes and
`differentiable` whether attribution methods (EAP, EAP-IG) may take its gradient. `needs` names
what the batch must carry, so a task without answers is refused up front.
"""),
    code("""
def answer_margin(logits, batch):
    logits = logits.float()
    answer = logits.gather(-1, batch.answer[:, None]).squeeze(-1)
    others = logits.scatter(-1, batch.answer[:, None], float("-inf"))
    return answer - others.max(-1).values


MARGIN = Metric("answer_margin", answer_margin, needs=("answer",),
                description="answer logit minus the largest other logit")
"""),
    md("""
## Register them in-process

A plugin is any object whose methods are marked `@hookimpl` and named like the hooks:
`acdc_tasks` and `acdc_metrics` each return a list. `plugins.register(obj, name=...)` adds it to
the plugin manager (`plugins.plugin_manager()`, a pluggy `PluginManager`); the registry is
rebuilt at its next use. A packaged plugin would put the same functions in a module and name it
in its `pyproject.toml` under `[project.entry-points.acdc_engine]`.
"""),
    code("""
class AbcPlugin:
    @hookimpl
    def acdc_tasks(self):
        return [ABC]

    @hookimpl
    def acdc_metrics(self):
        return [MARGIN]


if "notebook-abc" in plugins.providers():     # re-running the notebook: register afresh
    plugins.unregister("notebook-abc")
plugins.register(AbcPlugin(), name="notebook-abc")

reg = plugins.registry()
print("provided by:", plugins.providers()["notebook-abc"])
print("task:", reg.tasks["ioi-abc"].description)
print("metric:", reg.metrics["answer_margin"].description)
"""),
    code("""
assert plugins.providers()["notebook-abc"] == "in-process"
assert load_task("ioi-abc") is ABC
assert plugins.plugin_manager().get_plugin("notebook-abc") is not None
"""),
    md("""
## Check them with the conformance kit

`acdc_engine.testing` is the kit to run against a plugin in its own tests: `check_task` reads
rows, honours `n` and the seed, and tokenizes them with the model's tokenizer; `check_metric`
feeds a metric small batches (one read position and several) and checks it returns one finite
value per example, with gradients when it says it is differentiable. `check_task` also checks
that the task's default metric is registered, which is why it runs after registering. Each
raises an `AssertionError` naming the rule that failed.
"""),
    code("""
from acdc_engine.testing import check_metric, check_task

model = load_model("tiny-ioi", device="cpu")
check_metric(MARGIN)
check_task(ABC, tokenizer=model.tokenizer)    # after registering: its default metric must exist
print("task and metric pass the conformance kit")
"""),
    md("""
## Discover with them

The task is now a name like any other: `discover(task="ioi-abc")` uses its default metric
(`answer_margin`) and its model (`tiny-ioi`). EAP scores every edge with one forward and one
backward pass.
"""),
    code("""
result = discover(model, task="ioi-abc", method="eap", n_edges=60,
                  track=False, render=False, progress=False)
print(result.summary())
"""),
    code("""
f = result.faithfulness
assert result.params["metric"] == "answer_margin" and result.params["task"] == "ioi-abc"
assert f.full > 0                     # the model puts the answer on top on the clean prompts
assert f.full > f.empty               # and the corrupted prompts take that away
assert 0.0 <= f.normalized <= 1.2, f.normalized
G = result.circuit.nx
assert nx.has_path(G, "input", "logits")
"""),
    md("""
The same plugin object can be registered from a package with an entry point, and then
`acdc discover --task ioi-abc` and `acdc plugins` see it too. Unregister it when done
(for example between tests):
"""),
    code("""
plugins.unregister("notebook-abc")
assert "ioi-abc" not in plugins.registry().tasks
"""),
]


# ----- (c) base vs fine-tuned -------------------------------------------------------------------
COMPARE = [
    md("""
# Compare a base and a fine-tuned model

What changes in a circuit when a model is fine-tuned, and does the base model's circuit still
work in the tuned one? This notebook makes a fine-tuned model of its own, so the answer is known
in advance: it takes the shipped `tiny-ioi`, **knocks out attention head a2.3** (zeroes its
slice of the output projection), fine-tunes the rest for a few SGD steps on IOI prompts so the
model compensates, and saves it with `save_pretrained`. Then `compare_models` discovers the
circuit in both models with the same settings on the same examples and reads the diff.

(On the command line: `acdc compare --discover tiny-ioi path/to/tuned --task ioi`; docs/compare.md.)
"""),
    code("""
import tempfile
from collections import defaultdict
from pathlib import Path

import torch

from acdc_engine import Circuit, cross_faithfulness, load_model, load_task
from acdc_engine.api.compare import compare_models

torch.manual_seed(0)
base = load_model("tiny-ioi", device="cpu")
hf, tokenizer = base.hf, base.tokenizer
config = hf.config
print(f"{config.n_layer} layers, {config.n_head} heads, d_model {config.n_embd}")
"""),
    md("""
## Fine-tune briefly

The training batch is IOI prompts (a different seed from the examples discovery uses), grouped
by token length so no padding is needed; the loss is the cross-entropy of the answer at the last
position. After each step the knocked-out head's slice is zeroed again, so a2.3 writes nothing
in the tuned model.
"""),
    code("""
rows = load_task("ioi").rows(128, 1)
by_length = defaultdict(list)
for row in rows:
    ids = tokenizer(row["clean"])["input_ids"]
    by_length[len(ids)].append((ids, tokenizer(row["answer"])["input_ids"][-1]))
batches = [(torch.tensor([i for i, _ in group]), torch.tensor([a for _, a in group]))
           for group in by_length.values()]

tuned = type(hf)(config)
tuned.load_state_dict(hf.state_dict())
LAYER, HEAD = 2, 3
d_head = config.n_embd // config.n_head
head_rows = slice(HEAD * d_head, (HEAD + 1) * d_head)   # GPT-2's Conv1D: y = x @ W


def knock_out(model):
    with torch.no_grad():
        model.transformer.h[LAYER].attn.c_proj.weight[head_rows, :] = 0


def answer_loss(model):
    total = sum(torch.nn.functional.cross_entropy(model(ids).logits[:, -1], answers,
                                                  reduction="sum")
                for ids, answers in batches)
    return total / sum(len(answers) for _, answers in batches)


knock_out(tuned)
tuned.train()
optimizer = torch.optim.SGD(tuned.parameters(), lr=0.1, momentum=0.9)
losses = []
for step in range(20):
    optimizer.zero_grad()
    loss = answer_loss(tuned)
    loss.backward()
    optimizer.step()
    knock_out(tuned)
    losses.append(loss.item())
tuned.eval()
print(f"loss {losses[0]:.4f} -> {losses[-1]:.4f} over {len(losses)} steps")
assert losses[-1] < losses[0]
"""),
    code("""
workdir = Path(tempfile.mkdtemp())
tuned_dir = workdir / "tiny-ioi-knocked-out"
tuned.save_pretrained(tuned_dir)
tokenizer.save_pretrained(tuned_dir)
print(sorted(p.name for p in tuned_dir.iterdir()))
"""),
    md("""
## Discover in both and read the diff

`compare_models` loads both (a shipped name and a directory alike), discovers with EAP-IG on the
same 32 examples with the same edge budget, and compares:

- which edges and nodes are shared, only in base, only in tuned (Jaccard overlaps);
- each edge's **score change** with a paired bootstrap interval over the examples (an edge
  absent from a circuit still has a score in that model; a change whose interval contains 0 is
  noise);
- the **cross-faithfulness** table: each circuit (rows) evaluated in each model (columns).
"""),
    code("""
cmp = compare_models("tiny-ioi", str(tuned_dir), task="ioi", method="eap-ig", n_edges=60,
                     n_examples=32, names=("base", "knocked-out"), n_boot=200, curve=False,
                     out=workdir / "compare", track=False, render=False, progress=False)
print(cmp.summary())
"""),
    code("""
diff = cmp.comparison
from_a23 = [d for d in cmp.deltas if d.edge.startswith("a2.3->")]
for d in from_a23:
    print(f"{d.edge:<16} base {d.score_a:+.4f}  knocked-out {d.score_b:+.4f}")
# the knocked-out head writes nothing in the tuned model: its scores there are exactly 0,
# so none of its edges is in the tuned circuit
assert all(d.score_b == 0 for d in from_a23), from_a23
assert not any(e.startswith("a2.3->") for e in diff.shared + diff.only_b)
assert 0 < diff.edge_jaccard <= 1
(base_in_base, base_in_tuned), (tuned_in_base, tuned_in_tuned) = cmp.cross
for value in (base_in_base, base_in_tuned, tuned_in_base, tuned_in_tuned):
    assert 0.0 <= value <= 1.2, cmp.cross
print(f"{len(cmp.significant)} of {len(cmp.deltas)} score changes exclude zero")
"""),
    md("""
With `out`, the comparison is also written to disk: `comparison.json`, a summary, an offline
`report.html`, both discovery runs (one directory per model, named as in `names`, each with its
`circuit.json`) and, with
matplotlib, the diff diagram (solid: in both; dashed: only in base; dotted: only in tuned).
"""),
    code("""
from IPython.display import Image, display

print(sorted(p.name for p in (workdir / "compare").iterdir()))
if "diff" in cmp.files:
    display(Image(filename=str(cmp.files["diff"])))
"""),
    md("""
## The same table from saved circuits

Circuits saved by earlier runs can be compared without rediscovering: `cross_faithfulness`
takes circuits (objects, networkx graphs or `circuit.json` paths) and models, and evaluates each
circuit in each model.
"""),
    code("""
base_circuit, tuned_circuit = (Circuit.load(workdir / "compare" / name / "circuit.json")
                               for name in cmp.names)
table = cross_faithfulness([base_circuit, tuned_circuit], ["tiny-ioi", str(tuned_dir)],
                           task="ioi", n_examples=32)
for name, row in zip(("base", "knocked-out"), table):
    print(f"{name:<12} " + "  ".join(f"{v:.3f}" for v in row))
assert abs(table[0][0] - cmp.cross[0][0]) < 1e-3 and abs(table[1][1] - cmp.cross[1][1]) < 1e-3
"""),
    md("""
Read the transfer with care: a high off-diagonal value says the circuit is *sufficient* in the
other model under this metric and ablation, not that the other model uses the same mechanism.
"""),
]


# ----- (d) the live viewer in a notebook --------------------------------------------------------
VIEWER = [
    md("""
# The live viewer in a notebook

`acdc view` is a browser workbench on a running model: the architecture map with the circuit,
live interventions (ablate, freeze, patch) and their effect on the task's metric, attention
patterns, the logit lens. In a notebook, `acdc_engine.view.Session` is that same live session:
code and the page share it, and **every change made from code shows in the open page at once**.

Nothing here needs a browser: the server listens on the loopback address only, and the notebook
reads the same state the page reads (`/api/state`).
"""),
    code("""
import json
import urllib.request

from IPython.display import display

from acdc_engine.view import Session

session = Session.open("tiny-ioi", "ioi", n_examples=32)
session
"""),
    md("""
The session renders inline (above). `serve()` starts the web server in a background thread,
on `127.0.0.1` and a free port, and the notebook keeps working; displaying the server embeds the
live page in the notebook (in Jupyter, not in a static rendering of this page).
"""),
    code("""
server = session.serve()
print(server.url)
assert server.url.startswith("http://127.0.0.1:")
display(server)


def page_state():
    \"\"\"What the page sees: the session's state, over HTTP.\"\"\"
    with urllib.request.urlopen(server.url + "api/state", timeout=30) as response:
        return json.load(response)


before = page_state()
print(before["model"], before["task"], before["metric"], round(before["summary"]["metric"], 3))
assert before["interventions"] == []
"""),
    md("""
## An intervention from code

`session.ablate("a0.3", "mean")` replaces head a0.3's output with its mean over the task's
corrupted prompts, re-evaluates every example through the engine's patched forward, and returns
the new summary: the metric, its change, the accuracy and which examples flipped. The page
updates through server-sent events; here we read its state back.
"""),
    code("""
summary = session.ablate("a0.3", "mean")
print(f"logit difference {before['summary']['metric']:.3f} -> {summary.metric:.3f} "
      f"(change {summary.delta:+.3f}), accuracy {summary.accuracy:.2f}, "
      f"{len(summary.flipped)} examples flipped")

after = page_state()
print(after["steps"], after["targets"])
assert after["interventions"] == ["ablate a0.3 mean"]
assert after["targets"] == {"a0.3": "mean"}
assert after["version"] > before["version"]
assert abs(after["summary"]["metric"] - summary.metric) < 1e-6
assert summary.metric < before["summary"]["metric"]        # a0.3 carries the behaviour
"""),
    md("""
The console commands of the page work from code too (`session.command`), and interventions
stack: patching every head of layer 2 from the corrupted run adds one step on top.
"""),
    code("""
answer = session.command("patch a2.* from corrupted")
print(answer["message"])
assert answer["ok"]
assert len(page_state()["interventions"]) == 1 + 4        # a0.3, then a2.0 ... a2.3

session.undo()
assert page_state()["interventions"] == ["ablate a0.3 mean"]
session.reset()
state = page_state()
assert state["interventions"] == []
assert abs(state["summary"]["metric"] - before["summary"]["metric"]) < 1e-4
"""),
    md("""
Hooks on the model itself (`session.hook(module, fn)`) and edits of its weights inside
`with session.changing("what changed"):` show in the page the same way (docs/view.md). Stop the
server when done; the session keeps its state.
"""),
    code("""
server.stop()
"""),
]


NOTEBOOKS = {
    "01-discover.ipynb": DISCOVER,
    "02-plugin.ipynb": PLUGIN,
    "03-compare.ipynb": COMPARE,
    "04-viewer.ipynb": VIEWER,
}


def build(cells: list[tuple[str, str]]) -> nbformat.NotebookNode:
    """A notebook without outputs, with stable cell ids (so regenerating changes nothing)."""
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": dict(KERNELSPEC),
                   "language_info": {"name": "python"}}
    for i, (kind, text) in enumerate(cells):
        make = nbformat.v4.new_markdown_cell if kind == "markdown" else nbformat.v4.new_code_cell
        cell = make(text)
        cell.id = f"cell-{i:02d}"
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def render(cells) -> str:
    return nbformat.writes(build(cells)) + "\n"


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else HERE
    for name, cells in NOTEBOOKS.items():
        (out / name).write_text(render(cells))
        print(out / name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
