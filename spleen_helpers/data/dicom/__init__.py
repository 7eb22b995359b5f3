"""DICOM CT, step by step: the series' types (:mod:`.series`), scanning a study folder
(:mod:`.scan`), checking and ordering the slices (:mod:`.order`), choosing a series
(:mod:`.choose`), converting it to NIfTI (:mod:`.convert`) and reading it as HU (:mod:`.hu`).
docs/dicom.md says which checks are the course's and which dicom2nifti's, and why."""
