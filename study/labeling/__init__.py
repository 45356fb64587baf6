"""A labelling round trip: frames out to a labelling tool, its export back in as the joint YOLO layout.

``python -m study.data export-labels --format label-studio|cvat FRAMES --out DIR`` writes what the tool imports
(Label Studio: tasks.json and the labelling configuration; CVAT: the labels to paste into a project);
``python -m study.data import-labels --format label-studio|cvat EXPORT --images FRAMES --out DATASET`` reads the
tool's export (Label Studio's "JSON"; CVAT's "CVAT for images 1.1" XML, or its "YOLO 1.1" with that XML for the
view tags) and writes DATASET/data.yaml, images/ and labels/ in the layout ``python -m study.data check`` reads
(trainables/data/labels.py). joint.py holds what both tools share: the checks, the label lines and the writing.
"""
