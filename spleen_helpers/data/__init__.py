"""Data in and out: NIfTI reading and checks, the spleen's side, the Task09 data set and its
download, DICOM studies, DICOM SEG, and the synthetic phantom. Imports only the ground."""
