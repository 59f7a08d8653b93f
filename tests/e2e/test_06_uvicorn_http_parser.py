"""The server's workers parse HTTP with httptools, uvicorn's C parser (server/requirements.txt).

uvicorn picks httptools when it can import it and otherwise parses every request and
response with pure-Python h11, which MLflow's own dependencies leave it with; h11 was ~10%
of a worker's CPU during an upload and part of every call (docs/performance.md). Fails when
the image loses httptools or uvicorn stops choosing it."""

import json

WORKER_PARSERS = (
    "import json, pathlib\n"
    "procs = {}\n"
    "for p in pathlib.Path('/proc').glob('[0-9]*'):\n"
    "    try:\n"
    "        argv = (p / 'cmdline').read_bytes().split(b'\\0')\n"
    "        ppid = int((p / 'stat').read_text().rsplit(')', 1)[1].split()[1])\n"
    "        maps = (p / 'maps').read_text()\n"
    "    except OSError: continue\n"
    "    procs[int(p.name)] = (ppid, argv[1:3] == [b'-m', b'uvicorn'],\n"
    "                          '/httptools/parser/' in maps)\n"
    "print(json.dumps({pid: httptools for pid, (ppid, uvicorn, httptools) in procs.items()\n"
    "                  if uvicorn and procs.get(ppid, (0, False))[1]}))\n"
)


def test_workers_parse_http_with_httptools(stack):
    workers = json.loads(stack.exec("mlflow", "python", "-c", WORKER_PARSERS))
    assert workers, "no uvicorn worker found in the mlflow container"
    without = [pid for pid, loaded in workers.items() if not loaded]
    assert not without, f"uvicorn workers without httptools (parsing with h11): {without}"
