"""Benchmark suite of fence_gfs2_recorder.

Run it through ``bench/run.sh`` (``make bench``) or ``bench/harness.py``. It
measures, in one run, one module per section:

1. answer latency (rename of the response into place -> agent exit / return)
2. start-up of ``-o monitor`` and ``-o metadata`` against ``fence_dummy``
3. bursts of concurrent agents against ``fence-gfs2-responder``
4. answer latency in crowded request and response directories
5. the cost of GFS2 discovery with a slow stand-in kubectl
6. peak RSS of the agent against ``fence_dummy``
7. journal records per second, 1 and 32 writers

``common`` holds what they share and ``cli`` the command line. It prints a
table and writes a JSON file with every figure. The harness plays the
responder itself where latency is measured, so both ends of the interval are
taken by the same clock in the same process.
"""
