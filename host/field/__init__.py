"""Tools a technician runs beside a board: provision, flash, deploy, doctor, pull,
monitor. Each ``run(board, ...)`` takes a connected ``board.Board``; the command
opens it."""
