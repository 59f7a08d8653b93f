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


WARMED_S3_CLIENT = """
import boto3, botocore.loaders
from mlflow_stack import uvicorn_preload
uvicorn_preload.warm_s3_client_data()
reads = []
original = botocore.loaders.Loader.load_data_with_path
def counted(self, name, *args, **kwargs):
    reads.append(name)
    return original(self, name, *args, **kwargs)
botocore.loaders.Loader.load_data_with_path = counted
boto3.client("s3", region_name="us-east-1", endpoint_url="http://127.0.0.1:9",
             aws_access_key_id="k", aws_secret_access_key="s")
print(" ".join(reads))
"""


def test_the_parent_leaves_s3s_model_parsed_for_the_workers_clients(stack):
    """A worker's first artifact request makes its S3 client; with S3's model already
    parsed in the inherited boto3 session it reads none of S3's model files (cold, a client
    read seven files, three of them S3's, and took ~0.28 s with boto3's import)."""
    reads = stack.exec("mlflow", "python", "-c", WARMED_S3_CLIENT).strip().splitlines()[-1:]
    assert not [name for name in " ".join(reads).split() if name.startswith("s3/")], reads
