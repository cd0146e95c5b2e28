"""The study core: schema, plan, ids, output layout, study (torch-free)."""
