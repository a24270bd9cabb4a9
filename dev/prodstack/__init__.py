"""The production stack as a reference environment: a separate venv with the versions production binaries
were pickled with (scikit-learn 1.0.2 from ../shared/prodstack/wheels, pyenchant 3.2.2, the rest as pinned),
and more binaries made with it. See dev/prodstack/README.md."""
