from ec_node.cli import main

main()
