"""micrograd's moons demo; the code is crad/examples/moons.py."""
from crad.examples.moons import main

if __name__ == "__main__":
    main()
