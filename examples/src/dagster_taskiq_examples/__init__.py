"""An example Dagster project on dagster-taskiq, and the ``dagster-taskiq demo`` command.

``dagster_taskiq_examples.definitions`` is the code location (``defs``): a job, partitioned
assets with a check and the benchmark jobs, with ``taskiq_executor`` as the default executor.
"""

import importlib.metadata

from dagster_taskiq_examples.pipeline import REGIONS, DemoKnobs

__version__ = importlib.metadata.version("dagster-taskiq-examples")

__all__ = ["REGIONS", "DemoKnobs", "__version__"]
