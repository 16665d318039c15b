"""Toy regression (the README's main job); the code is crad/examples/toy.py."""
from crad.examples.toy import main

if __name__ == "__main__":
    main()
