"""Teaching aids, used only by notebooks: equality proofs, transform and model inspection,
viewers, the notebooks' opening cells and a side-by-side settings table."""
