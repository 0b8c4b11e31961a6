from stocksync_cli.main import main

main()
