from crmtasks.cli import main

main(prog_name="crmtasks")
