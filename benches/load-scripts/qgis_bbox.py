#!/usr/bin/python3
"""QGIS-style bbox reads of a GeoPackage through GDAL (#15).

What a desktop user's pan costs: for each of N viewports (a 0.02 x 0.015
degree box, about the screen at z14, spread over the store's extent), read
every feature of `addresses` and `grids` that meets it, as QGIS's OGR
provider does (OGR_L_SetSpatialFilterRect, then iterate). GDAL uses the
GeoPackage R-tree when the table has one and scans the table otherwise.

    /usr/bin/python3 benches/load-scripts/qgis_bbox.py STORE.gpkg [N]

Prints whether each layer has the R-tree, the features read, and p50/p90/max
milliseconds per viewport.
"""
import sys, time, random
from osgeo import ogr, gdal

gdal.UseExceptions()
path = sys.argv[1]
n = int(sys.argv[2]) if len(sys.argv) > 2 else 20
ds = ogr.Open(path, 0)
layers = [ds.GetLayerByName(x) for x in ("addresses", "grids")]
ext = layers[0].GetExtent()  # minx, maxx, miny, maxy
rnd = random.Random(15)
boxes = []
for _ in range(n):
    x = ext[0] + rnd.random() * (ext[1] - ext[0] - 0.02)
    y = ext[2] + rnd.random() * (ext[3] - ext[2] - 0.015)
    boxes.append((x, y, x + 0.02, y + 0.015))
for l in layers:
    has = ds.ExecuteSQL(
        "SELECT count(*) FROM sqlite_master WHERE name = 'rtree_%s_geom'" % l.GetName()
    )
    print("%s: R-tree %s" % (l.GetName(), "yes" if has.GetNextFeature().GetField(0) else "no"))
    ds.ReleaseResultSet(has)
ms, feats = [], 0
for b in boxes:
    t = time.perf_counter()
    for l in layers:
        l.SetSpatialFilterRect(*b)
        l.ResetReading()
        for f in l:
            feats += 1
    ms.append((time.perf_counter() - t) * 1000)
ms.sort()
q = lambda p: ms[min(len(ms) - 1, int(p * len(ms)))]
print("%d viewports, %d features read; ms per viewport p50 %.1f p90 %.1f max %.1f"
      % (n, feats, q(0.5), q(0.9), ms[-1]))
