import sys

from crm_data.cli import main

sys.exit(main())
