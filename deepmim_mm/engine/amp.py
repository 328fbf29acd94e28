# Transitional: the old path of deepmim_mm.utils.amp, until the imports of other areas are
# rewritten at the merge (then delete this file).
from ..utils.amp import *  # noqa: F401,F403
