from bench.simulator.cli import main

main()
