"""Tools on top of every wing: the ``spleen-course`` command (:mod:`.cli`, all argparse lives
in this folder), the headless course runner (:mod:`.course`) and the ``torchrun`` entry point
(:mod:`.train`).
"""
