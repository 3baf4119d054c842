from donjon.cli import main

main()
