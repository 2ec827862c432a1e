"""The peers' own released test suites, run against coatcheck (`.ci/peers`).

Their code is downloaded from the package index at run time and never committed; these
modules only adapt it the way the README tells a user to switch, run it, and compare the
results with the floors in `floors.py`.
"""
