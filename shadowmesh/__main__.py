from shadowmesh.cli.main import main

main()
