"""The board without hardware: the simulated village and the virtual board."""
