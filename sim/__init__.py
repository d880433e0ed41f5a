# jksim: the board simulator (fake hardware, virtual clock, plant model).
