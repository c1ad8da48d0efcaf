/* sqlite backend: to be written */
