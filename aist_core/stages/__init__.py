"""Stage glue: what each pipeline stage does with its component(s), written against the
interfaces only (NumPy, Pillow, lazy matplotlib; never torch). The runner (`aist_core.runner`)
decides when a stage runs and where its output lives; these functions do the work.

Every function takes the stage's output folder `out` (a temporary folder that survives a crash,
renamed into place by the runner when the function returns) and a `StageContext`, and returns a
JSON-serialisable dict of report values.
"""
