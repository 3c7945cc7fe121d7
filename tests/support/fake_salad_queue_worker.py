#!/usr/bin/env python3
"""Stands in for Salad's job-queue worker binary in tests: POSTs jobs to /generate the way it does (one at
a time, `Salad-Job-Id` header, retrying 408/429/5xx and connection errors up to 3 times), writes what it
got to $FAKE_RESULTS, then idles until SIGTERM like the real worker."""

import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request

TARGET = os.environ["FAKE_TARGET"]
RESULTS = os.environ["FAKE_RESULTS"]
JOBS = json.loads(os.environ["FAKE_JOBS"])


def post(job_id, body):
    for attempt in range(4):
        request = urllib.request.Request(TARGET, data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json", "Salad-Job-Id": job_id})
        try:
            with urllib.request.urlopen(request, timeout=600) as resp:
                return {"job": job_id, "http": resp.status, "attempts": attempt + 1, "body": json.loads(resp.read())}
        except urllib.error.HTTPError as exc:
            if exc.code not in (408, 429) and exc.code < 500:
                return {"job": job_id, "http": exc.code, "attempts": attempt + 1, "body": json.loads(exc.read())}
        except OSError:
            pass
        time.sleep(1)
    return {"job": job_id, "http": None, "attempts": 4, "body": None}


ready = urllib.request.urlopen(TARGET.replace("/generate", "/ready"), timeout=10).status  # started after ready?
results = {"ready_when_started": ready, "responses": [post(job_id, body) for job_id, body in JOBS]}
with open(RESULTS + ".tmp", "w") as f:
    json.dump(results, f)
os.replace(RESULTS + ".tmp", RESULTS)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
while True:
    time.sleep(1)
