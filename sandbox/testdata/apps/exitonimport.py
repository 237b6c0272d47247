"""An app whose import exits the interpreter (os._exit), for the tests of a failed start."""
import os

os._exit(3)
