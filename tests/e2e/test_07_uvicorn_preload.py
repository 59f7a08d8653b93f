"""The server image's preload of MLflow in uvicorn's parent (server/mlflow_stack/uvicorn_preload.py):
the workers are forked from a parent that imported MLflow's server once, instead of each
importing it in a fresh interpreter. Fails when uvicorn changes how it starts workers and
the patch no longer takes effect."""

import json

PROCESSES = (
    "import json, pathlib\n"
    "out = []\n"
    "for p in pathlib.Path('/proc').glob('[0-9]*'):\n"
    "    try:\n"
    "        argv = (p / 'cmdline').read_bytes().split(b'\\0')\n"
    "        ppid = int((p / 'stat').read_text().rsplit(')', 1)[1].split()[1])\n"
    "    except OSError: continue\n"
    "    out.append({'pid': int(p.name), 'ppid': ppid, 'argv': [a.decode() for a in argv if a]})\n"
    "print(json.dumps(out))\n"
)


def test_workers_are_forked_from_the_preloaded_uvicorn_parent(stack):
    processes = json.loads(stack.exec("mlflow", "python", "-c", PROCESSES))
    parents = [p for p in processes if p["argv"][1:3] == ["-m", "uvicorn"]
               and not any(q["pid"] == p["ppid"] and q["argv"][1:3] == ["-m", "uvicorn"]
                           for q in processes)]
    assert len(parents) == 1, processes
    parent = parents[0]
    children = [p for p in processes if p["ppid"] == parent["pid"]]
    # A spawned worker runs `python -c "from multiprocessing.spawn import spawn_main ..."`
    # (next to multiprocessing's resource tracker); a forked one keeps its parent's argv.
    spawned = [c for c in children if any("spawn_main" in a for a in c["argv"])]
    assert not spawned, f"workers were spawned, not forked: {spawned}"
    forked = [c for c in children if c["argv"] == parent["argv"]]
    assert len(forked) == int(parent["argv"][parent["argv"].index("--workers") + 1]), children
