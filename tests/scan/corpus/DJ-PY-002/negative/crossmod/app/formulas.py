SETUP = "import math"
AREA = "3.14159 * " + "r ** 2"
