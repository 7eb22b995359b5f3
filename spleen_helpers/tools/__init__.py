"""The tools around the pipeline: the ``spleen-course`` command (:mod:`.cli`), the headless
course runner (:mod:`.course`) and the writer of the notebooks' opening cells
(:mod:`.notebook_cells`). They import the pipeline modules; no pipeline module imports them.
"""
