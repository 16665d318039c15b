"""MNIST on scalar graphs; the code is crad/examples/mnist.py."""
from crad.examples.mnist import main

if __name__ == "__main__":
    main()
