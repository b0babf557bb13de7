"""Query latency at one level of grids: POST /api/query with {"grid": code}
for N grids of a level, counting every layer (limit 0), and CSV export
throughput for the largest one.

    python3 benches/load-scripts/query_latency.py http://127.0.0.1:8096 [N]
"""
import json, sys, time, urllib.request

base = sys.argv[1]
n = int(sys.argv[2]) if len(sys.argv) > 2 else 40

def get(path):
    with urllib.request.urlopen(base + path) as r:
        return json.load(r)

def post(body):
    req = urllib.request.Request(base + "/api/query", data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
    t = time.perf_counter()
    with urllib.request.urlopen(req) as r:
        j = json.load(r)
    return (time.perf_counter() - t) * 1000, j

def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, round((len(v) - 1) * p))]

print("level      grids  p50 ms  p99 ms  mean addresses counted")
for level in ["micro", "community", "street"]:
    grids = get(f"/api/grids?level={level}")["grids"]
    step = max(1, len(grids) // n)
    codes = [g["code"] for g in grids[::step]][:n]
    times, counted = [], []
    for c in codes:
        ms, j = post({"area": {"grid": c}, "limit": 0})
        times.append(ms)
        counted.append(j["layers"]["addresses"]["count"])
    print(f"{level:10} {len(codes):5} {pct(times, .5):7.1f} {pct(times, .99):7.1f} {sum(counted) / len(counted):10.0f}")

streets = get("/api/grids?level=street")["grids"]
big = max(streets, key=lambda g: g["counts"]["addresses"])
q = json.dumps({"area": {"grid": big["code"]}, "layers": ["addresses"]})
t = time.perf_counter()
with urllib.request.urlopen(base + "/api/query.csv?q=" + urllib.parse.quote(q)) as r:
    rows = sum(1 for _ in r) - 1
dt = time.perf_counter() - t
print(f"CSV export of street {big['code']}: {rows} rows in {dt:.2f} s = {rows / dt:,.0f} rows/s")
