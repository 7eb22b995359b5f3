"""The ground every wing stands on: one-line errors, atomic files, paths and run layout,
settings, figures. It imports nothing else from the package."""
