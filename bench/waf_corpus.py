#!/usr/bin/env python3
"""Sends every request of the managed rule set's corpora through a running edgenet node and
prints the detection and false-positive rates as JSON (a 403 counts as detected).

  waf_corpus.py PORT HOST CORPUS_DIR
"""
import http.client
import json
import sys
import time


def run(port, host, path):
    statuses = []
    slow = []
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    with open(path, encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            for attempt in (0, 1):
                try:
                    t = time.monotonic()
                    conn.putrequest("GET", r["uri"], skip_host=True, skip_accept_encoding=True)
                    conn.putheader("Host", host)
                    conn.putheader("User-Agent", r["user_agent"])
                    conn.endheaders()
                    resp = conn.getresponse()
                    resp.read()
                    statuses.append(resp.status)
                    if time.monotonic() - t > 0.5:
                        slow.append(r["uri"])
                    break
                except (http.client.HTTPException, OSError):
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                    if attempt:
                        statuses.append(0)
    return statuses, slow


def main():
    port, host, corpus = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    attack, slow_a = run(port, host, f"{corpus}/attack.jsonl")
    benign, slow_b = run(port, host, f"{corpus}/benign.jsonl")
    other = sorted({s for s in attack + benign if s not in (200, 403)})
    if slow_a or slow_b:
        print("slow requests:", (slow_a + slow_b)[:10], file=sys.stderr)
    print(json.dumps({
        "waf_detection_rate": round(sum(s == 403 for s in attack) / len(attack), 4),
        "waf_false_positive_rate": round(sum(s == 403 for s in benign) / len(benign), 4),
        "attacks": len(attack), "benign": len(benign), "other_statuses": other,
    }))


if __name__ == "__main__":
    main()
