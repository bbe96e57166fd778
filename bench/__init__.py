"""Speed and memory benchmarks of the watchdog, each as a ratio against a floor.

The floor is the unavoidable cost of the same I/O made with the bare gateway and
HTTP calls, measured in the same run, against the same sandbox, through the same
clients. The ratio is what the watchdog's own logic (drift decision, repair,
logging, rendering, thread pool) adds on top. Absolute times depend on the machine
and are printed only beside the ratio; nothing here is a pass/fail threshold.

Run it with ``python -m bench`` (``--quick`` for a smoke run).
"""
