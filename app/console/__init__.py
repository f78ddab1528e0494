"""The inspector console (督查控制台): server-rendered pages for discipline inspectors, under /console."""
