"""Frames in and out: images, videos and DICOM cine loops, for predict and for labelling."""
