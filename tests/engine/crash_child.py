"""Child process of the crash test: writes transactions and reports each acknowledged one.

Usage: python -m tests.engine.crash_child PROVIDER LOCATION_JSON ROUND THREADS
Each transaction of thread T writes r<ROUND>/t<T>/<seq>/{a,b,c} and moves r<ROUND>/t<T>/last to
seq; once commit() returns it prints "ACK T seq". The parent kills this process with SIGKILL.
"""

from __future__ import annotations

import json
import os
import sys
import threading

from engine import open_store


def main() -> None:
    provider, location, round_, threads = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], int(
        sys.argv[4]
    )
    store = open_store(provider, **location)
    out_lock = threading.Lock()
    print("READY", flush=True)

    def work(t: int) -> None:
        seq = 0
        while True:
            seq += 1
            base = f"r{round_}/t{t}/"
            payload = os.urandom(64).hex().encode()
            with store.begin(write=True) as txn:
                for part in "abc":
                    txn.put(f"{base}{seq:08d}/{part}".encode(), payload)
                txn.put(f"{base}last".encode(), str(seq).encode())
            with out_lock:
                sys.stdout.write(f"ACK {t} {seq}\n")
                sys.stdout.flush()

    for t in range(threads):
        threading.Thread(target=work, args=(t,), daemon=True).start()
    threading.Event().wait()


if __name__ == "__main__":
    main()
