from bench.floor.pipeline import main

main()
