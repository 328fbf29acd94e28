# Sphinx configuration of the deepmim-mm documentation (Markdown pages through myst-parser).
# Build: python -m sphinx -W -b html docs/en <out>   (warnings are errors)
import os.path as osp
import sys

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
sys.path.insert(0, ROOT)  # autodoc documents this checkout, not another installed copy

project = 'deepmim-mm'
copyright = 'deepmim-mm contributors'
author = 'deepmim-mm contributors'
release = '0.1.0'

extensions = ['myst_parser', 'sphinx.ext.autodoc', 'sphinx.ext.napoleon']
source_suffix = {'.md': 'markdown', '.rst': 'restructuredtext'}
myst_enable_extensions = ['colon_fence']
myst_heading_anchors = 3  # [text](page.md#a-section-title) links to a section
exclude_patterns = ['_build', '_scripts']

autodoc_member_order = 'bysource'
autodoc_default_options = {'members': True, 'show-inheritance': True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False

html_theme = 'furo'
html_title = 'deepmim-mm'
html_static_path = ['_static']
