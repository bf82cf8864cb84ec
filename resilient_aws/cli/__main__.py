import sys

from resilient_aws.cli import main

sys.exit(main())
