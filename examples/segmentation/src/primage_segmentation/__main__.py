import sys

from primage_segmentation.cli import main

sys.exit(main())
