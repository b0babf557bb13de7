#!/usr/bin/python3
"""What QGIS itself says of a GeoPackage's layers (#15): valid, feature
count, whether it finds the spatial index, and one bbox read of addresses
(a tenth of the extent each way) through QGIS's OGR provider.

    QT_QPA_PLATFORM=offscreen /usr/bin/python3 benches/load-scripts/qgis_index.py STORE.gpkg

Needs Debian's python3-qgis (QGIS 3.22 on Debian 12).
"""
import os
import sys, time
from qgis.core import QgsApplication, QgsVectorLayer, QgsFeatureSource, QgsRectangle, QgsFeatureRequest
app = QgsApplication([], False); app.initQgis()
path = sys.argv[1]
for name in ["grids", "addresses", "cameras", "risks", "buildings", "events", "roads", "water"]:
    l = QgsVectorLayer(f"{path}|layername={name}", name, "ogr")
    if not l.isValid():
        print(name, "INVALID"); continue
    si = l.hasSpatialIndex()
    print(f"{name}: valid, {l.featureCount()} features, hasSpatialIndex={si == QgsFeatureSource.SpatialIndexPresent} ({si}), geometry {l.geometryType()}")
l = QgsVectorLayer(f"{path}|layername=addresses", "a", "ogr")
e = l.extent(); r = QgsRectangle(e.xMinimum(), e.yMinimum(), e.xMinimum() + e.width()/10, e.yMinimum() + e.height()/10)
t = time.perf_counter(); n = sum(1 for _ in l.getFeatures(QgsFeatureRequest().setFilterRect(r))); print(f"bbox read: {n} addresses in {1000*(time.perf_counter()-t):.1f} ms")
# QGIS 3.22's exitQgis() crashes with layers alive: leave without it.
sys.stdout.flush()
os._exit(0)
