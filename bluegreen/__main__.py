from bluegreen.cli import main

raise SystemExit(main())
