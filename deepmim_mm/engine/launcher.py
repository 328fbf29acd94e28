# Transitional: the old path of deepmim_mm.utils.launcher, until the imports of other areas are
# rewritten at the merge (then delete this file).
from ..utils.launcher import *  # noqa: F401,F403
