from highway.cli import main

main()
