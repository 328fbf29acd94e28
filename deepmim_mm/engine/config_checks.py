# Transitional: the old path of deepmim_mm.utils.config_checks, until the imports of other areas are
# rewritten at the merge (then delete this file).
from ..utils.config_checks import *  # noqa: F401,F403
